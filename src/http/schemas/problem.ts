import { Type } from '@sinclair/typebox';

/** RFC 9457 body; extension members (errors, errorId, challengeToken, …) are allowed. */
export const ProblemSchema = Type.Object(
  {
    type: Type.String({ description: 'Stable slug naming the kind of problem' }),
    title: Type.String(),
    status: Type.Integer(),
    detail: Type.String({ description: 'What was wrong with this request' }),
  },
  { additionalProperties: true, $id: 'Problem', title: 'Problem' },
);
