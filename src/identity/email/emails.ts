/**
 * The texts of the emails identity sends. Each carries a single-use link that is as good as a
 * password until it is used; the transport (src/providers/smtp/mailer.ts) never logs them.
 */

export interface RenderedEmail {
  subject: string;
  text: string;
}

/** Must match how long the setup tokens they describe actually live. */
export const SETUP_LINK_TTL_HOURS = 24;
/** The default of CIPHERGATE_SIGNUP_PENDING_HOURS; the verification email is told the configured value. */
export const VERIFICATION_LINK_TTL_HOURS = 24;

/** Sent when an admin creates an account: the link lets the person choose their own password. */
export function renderSetupEmail(link: string): RenderedEmail {
  return {
    subject: 'Set up your Ciphergate account',
    text: lines(
      'An account has been created for you on Ciphergate.',
      '',
      'To choose your password and finish setting up the account, open this link:',
      '',
      link,
      '',
      `The link can be used only once and expires ${SETUP_LINK_TTL_HOURS} hours after this email was sent.`,
      'If it has expired, ask your administrator for a new one.',
      '',
      'If you did not expect this email, you can ignore it.',
    ),
  };
}

/**
 * Sent after self-registration: following the link proves the address belongs to the person,
 * who chooses the account's password there. `hours` is how long the link lives.
 */
export function renderVerificationEmail(link: string, hours: number = VERIFICATION_LINK_TTL_HOURS): RenderedEmail {
  return {
    subject: 'Confirm your email address for Ciphergate',
    text: lines(
      'To confirm this email address for a Ciphergate account and choose its password, open this link:',
      '',
      link,
      '',
      `The link can be used only once and expires ${hours} ${hours === 1 ? 'hour' : 'hours'} after this email was sent.`,
      'If you ask again before then, only the newest link works.',
      '',
      'If you did not sign up for Ciphergate, you can ignore this email; no account is made without it.',
    ),
  };
}

/**
 * Sent instead of a verification link when someone registers an address that has an account
 * already: the owner learns of the attempt, and the signup answer stays the same for both.
 */
export function renderAlreadyRegisteredEmail(signInUrl: string): RenderedEmail {
  return {
    subject: 'Someone tried to register your email on Ciphergate',
    text: lines(
      'Someone asked to register this email address on Ciphergate, but it already has an account.',
      '',
      `If it was you, sign in instead: ${signInUrl}`,
      '',
      'If it was not you, you can ignore this email; nothing about your account has changed.',
    ),
  };
}

function lines(...text: string[]): string {
  return `${text.join('\n')}\n`;
}
