/** mosaic generate | serve | worker */
import { MosaicError } from "./engine/errors.ts";
import { GENERATE_HELP, runGenerate } from "./cli/generate.ts";

const HELP = `Usage: mosaic <command> [options]

Commands:
  generate "<prompt>"   generate images into files (mosaic generate --help)

Environment:
  MOSAIC_MODEL          model folder (default: models/mosaic-shapes)
  MOSAIC_PROVIDER       cpu, webgpu or cuda (default: cpu)
`;

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case "generate":
      return runGenerate(rest);
    case undefined:
    case "-h":
    case "--help":
    case "help":
      process.stdout.write(`${HELP}\n${GENERATE_HELP}`);
      return;
    default:
      throw new MosaicError("BAD_INPUT", `unknown command "${command}" (mosaic --help lists them)`);
  }
}

main(process.argv.slice(2)).catch((e: unknown) => {
  if (e instanceof MosaicError) {
    process.stderr.write(`mosaic: ${e.message} [${e.code}]\n`);
    process.exitCode = e.code === "BAD_INPUT" ? 2 : 1;
  } else if (e instanceof TypeError && (e as NodeJS.ErrnoException).code?.startsWith("ERR_PARSE_ARGS")) {
    process.stderr.write(`mosaic: ${e.message} [BAD_INPUT]\n`);
    process.exitCode = 2;
  } else {
    process.stderr.write(`mosaic: unexpected error: ${e instanceof Error ? e.stack : String(e)}\n`);
    process.exitCode = 1;
  }
});
