import type { FastifyReply } from 'fastify';
import { problemHeaders, problemOf, type ProblemCode } from './problem-codes.js';
import type { Problem } from './problem-document.js';

export type { Problem } from './problem-document.js';

/**
 * Thrown by handlers and plugins; the one error handler turns it into a response. Made with
 * `HttpProblem.of(code, detail)` from the table of codes (problem-codes.ts); the constructor
 * spells out a problem of a code outside it.
 */
export class HttpProblem extends Error {
  override readonly name = 'HttpProblem';
  constructor(
    readonly status: number,
    readonly type: string,
    readonly title: string,
    readonly detail: string,
    readonly extensions: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(detail);
  }

  /** The problem of `code` as the table of codes answers it, with `detail` and any extension members. */
  static of(code: ProblemCode, detail: string, extensions: Record<string, unknown> = {}, retryAfterSeconds?: number): HttpProblem {
    const { type, title, status } = problemOf(code, detail);
    return new HttpProblem(status, type, title, detail, extensions, problemHeaders(code, retryAfterSeconds));
  }

  toProblem(): Problem {
    return { ...this.extensions, type: this.type, title: this.title, status: this.status, detail: this.detail };
  }
}

export const PROBLEM_CONTENT_TYPE = 'application/problem+json; charset=utf-8';

export function sendProblem(reply: FastifyReply, problem: Problem, headers: Record<string, string> = {}): FastifyReply {
  return reply.code(problem.status).headers(headers).type(PROBLEM_CONTENT_TYPE).send(problem);
}
