import { renderSVG } from 'uqr';

/**
 * The otpauth URI of a new authenticator as a QR code, an SVG document an enrollment page shows
 * as it is (uqr, MIT, no dependencies). The 4-module quiet zone is the one ISO/IEC 18004 asks for,
 * drawn on the white background the SVG carries, so the code also scans on a dark page; error
 * correction M (15 %) survives a screen's glare and moiré, and a 160-character URI still fits a
 * version 8 code that phone cameras read at arm's length.
 */
export function otpauthQrSvg(otpauthUri: string): string {
  return renderSVG(otpauthUri, { ecc: 'M', border: QUIET_ZONE_MODULES, pixelSize: 4 });
}

/** The quiet zone around the code, in modules. */
export const QUIET_ZONE_MODULES = 4;
