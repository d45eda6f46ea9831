import { Type } from '@sinclair/typebox';

/** The name of the shared problem schema: `components.schemas.Problem` in the OpenAPI document. */
export const PROBLEM_SCHEMA_ID = 'Problem';

/** RFC 9457 body; extension members (errors, errorId, challengeToken, …) are allowed. */
export const ProblemSchema = Type.Object(
  {
    type: Type.String({ description: 'Stable slug naming the kind of problem' }),
    title: Type.String(),
    status: Type.Integer(),
    detail: Type.String({ description: 'What was wrong with this request' }),
  },
  { additionalProperties: true, $id: PROBLEM_SCHEMA_ID, title: 'Problem' },
);
