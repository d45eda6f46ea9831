import type { Command } from 'commander';
import { CliError, EXIT } from './errors.js';

/**
 * Commander's usage errors ("error: unknown command 'x'", "error: required option '--role
 * <role>' not specified", …) as the one line every CLI error is: `ciphergate: ` and what is
 * wrong. Its wording stays (it names the option or argument); its `error: ` prefix and any
 * line breaks go, so scripts and people read one line.
 */
export function usageErrorLine(commanderText: string): string {
  const text = commanderText
    .replace(/^error:\s*/i, '')
    .replace(/\s*\n\s*/g, ' ')
    .trim();
  return `ciphergate: ${text}\n`;
}

/**
 * A command group (`users`, `keys`, …) given no subcommand or an unknown one: commander would
 * print the group's whole help, or "too many arguments"; the operator gets one line naming
 * the subcommands instead (exit 2).
 */
export function refuseMissingSubcommand(group: Command): void {
  group.allowExcessArguments().action(function (this: Command) {
    const names = group.commands.map((command) => command.name()).join(', ');
    const [given, helpFor] = this.args;
    if (given === 'help') {
      // `ciphergate users help create`: commander offers it only for groups without an action.
      (group.commands.find((command) => command.name() === helpFor) ?? group).outputHelp();
      return;
    }
    if (given === undefined) throw new CliError(`${group.name()}: name a subcommand: ${names}`, EXIT.usage);
    throw new CliError(`${group.name()}: unknown subcommand '${given}'; one of ${names}`, EXIT.usage);
  });
}
