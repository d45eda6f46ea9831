import { forbidden } from '../errors.js';
import type { Identity } from '../identity.js';
import type { Principal } from '../principal.js';
import { AuthSteps } from '../sign-in/auth-steps.js';
import { StepUp } from '../sign-in/step-up.js';

/**
 * What the use cases of one factor (enrolling an authenticator app, setting the phone SMS codes
 * go to) stand on: the sign-in steps (challenges, per-address allowance, locks, audit), the
 * step-up checks a signed-in change of factor needs, and the identity's parts.
 */
export abstract class FactorSteps {
  protected readonly steps: AuthSteps;
  protected readonly stepUp: StepUp;

  constructor(private readonly identity: Identity) {
    this.steps = new AuthSteps(identity);
    this.stepUp = new StepUp(identity);
  }

  protected get parts() {
    return this.identity.parts;
  }
}

/** The user whose factor a signed-in principal changes; an API key has no second factor to change. */
export function factorOwnerOf(principal: Principal): string {
  if (principal.kind !== 'user') throw forbidden('machines have no second factor');
  return principal.userId;
}
