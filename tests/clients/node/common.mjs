// What every Node driver shares: the environment the test sets, the tool, and the result line.
export const baseURL = process.env.OPENRESPONSES_BASE_URL;
export const apiKey = process.env.OPENRESPONSES_API_KEY;
export const model = process.env.CLIENT_MODEL;
export const token = process.env.TOOL_TOKEN;

export const TOOL_NAME = "shell";
export const TOOL_DESCRIPTION = "Run a shell command and return what it printed.";
export const TOOL_SCHEMA = {
  type: "object",
  properties: { command: { type: "string", description: "The command line." } },
  required: ["command"],
  additionalProperties: false,
};

/** The tool itself: never runs anything, answers with the token the test is looking for. */
export function shell({ command }) {
  return `${token} (from: ${command})`;
}

/** Run each scenario, keep its result or its error, print them all as one JSON line. */
export async function runScenarios(scenarios) {
  const results = {};
  for (const [name, fn] of Object.entries(scenarios)) {
    try {
      results[name] = await fn();
    } catch (error) {
      results[name] = { error: String(error?.stack || error).slice(0, 3000) };
    }
  }
  console.log(JSON.stringify(results));
}
