/**
 * Carrier keywords. US carriers and Twilio treat these single-word messages as commands: the
 * contact opts out (STOP…), back in (START…), or asks for help. Twilio answers them itself on
 * standard numbers (https://help.twilio.com/articles/223134027), and an AI must never answer them:
 * a reply after STOP breaks the opt-out rules (CTIA, TCPA).
 */
const OPT_OUT = new Set(['STOP', 'STOPALL', 'UNSUBSCRIBE', 'CANCEL', 'END', 'QUIT', 'OPTOUT', 'REVOKE', 'STOP ALL', 'OPT OUT']);
const OPT_IN = new Set(['START', 'YES', 'UNSTOP']);
const HELP = new Set(['HELP', 'INFO']);

export type Keyword = 'opt-out' | 'opt-in' | 'help';

/** The keyword a message is, if it is one: the whole message, any case, trailing punctuation ignored. */
export function keywordOf(body: string): Keyword | undefined {
  const word = body
    .trim()
    .replace(/[.!?\s]+$/u, '')
    .replace(/\s+/gu, ' ')
    .toUpperCase();
  if (OPT_OUT.has(word)) return 'opt-out';
  if (OPT_IN.has(word)) return 'opt-in';
  if (HELP.has(word)) return 'help';
  return undefined;
}

export type OptChange = 'opt-out' | 'opt-in';

/**
 * What a message from the contact does to their consent: opts them out, back in, or nothing.
 * Applied in the same commit as the message, so no AI job can run between a STOP and its flag.
 */
export function optChangeOf(body: string): OptChange | undefined {
  const keyword = keywordOf(body);
  return keyword === 'help' ? undefined : keyword;
}

/** Whether an AI may answer this message: a carrier keyword is the carrier's to answer, never the AI's. */
export function mayAiAnswer(body: string): boolean {
  return keywordOf(body) === undefined;
}
