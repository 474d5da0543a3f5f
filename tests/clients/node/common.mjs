// What every Node driver shares: the environment the test sets, the tool, and the result line.
export const baseURL = process.env.CLIENT_BASE_URL;
export const apiKey = process.env.CLIENT_API_KEY;
/** The models to drive, one per provider family the test selected. */
export const models = process.env.CLIENT_MODELS.split(",");
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

/**
 * For each model, run each scenario the factory makes for it; keep its result or its error.
 * Prints `{model: {scenario: result}}` as one JSON line.
 */
export async function runMatrix(scenariosFor) {
  const all = {};
  for (const model of models) {
    const results = {};
    for (const [name, fn] of Object.entries(scenariosFor(model))) {
      try {
        results[name] = await fn();
      } catch (error) {
        results[name] = { error: String(error?.stack || error).slice(0, 3000) };
      }
    }
    all[model] = results;
  }
  console.log(JSON.stringify(all));
}
