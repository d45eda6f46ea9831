/**
 * RFC 9457 problem details. `type` is a short, stable slug (`validation-failed`,
 * `second-factor-required`, …) that clients switch on; docs/http.md lists them. Its own module
 * because the table of codes (problem-codes.ts) builds these and HttpProblem (problem.ts) reads
 * that table: neither may import the other.
 */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  [extension: string]: unknown;
}
