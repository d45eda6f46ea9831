import { settings } from './settings.js';

/** docs/configuration.md, generated from the settings table so the two cannot drift apart. */
export function configurationReference(): string {
  const rows = Object.values(settings).map((setting) => {
    const variable = setting.secret ? `\`${setting.env}\` (or \`${setting.env}_FILE\`)` : `\`${setting.env}\``;
    const fallback = setting.defaultText === undefined ? 'unset' : `\`${setting.defaultText}\``;
    return `| ${variable} | ${setting.description.replaceAll('|', '\\|')} | ${fallback} |`;
  });
  return [
    '# Configuration reference',
    '',
    '<!-- Generated from src/config/settings.ts by `npm run docs:config`; test/config/reference.test.ts keeps it current. -->',
    '',
    'Ciphergate reads its configuration once, at start-up, from the environment. A missing or',
    'malformed value stops start-up with exit code 1 and one line on stderr naming the variable,',
    'what was expected and what was found (secret values are never echoed). An empty variable',
    'counts as unset.',
    '',
    'Secrets may instead be given as a file: set `<VARIABLE>_FILE` to its path (a trailing newline',
    'is ignored). Setting both forms of one variable is an error.',
    '',
    '| variable | meaning | default |',
    '| --- | --- | --- |',
    ...rows,
    '',
  ].join('\n');
}
