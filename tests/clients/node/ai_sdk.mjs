// The Vercel AI SDK (`ai` with `@ai-sdk/openai`, Responses API): generateText and streamText,
// each running the tool it offers and finishing with the model's answer.
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, jsonSchema, stepCountIs, streamText, tool } from "ai";
import { apiKey, baseURL, runMatrix, shell, TOOL_DESCRIPTION, TOOL_NAME, TOOL_SCHEMA } from "./common.mjs";

const provider = createOpenAI({ baseURL, apiKey });
const tools = {
  [TOOL_NAME]: tool({
    description: TOOL_DESCRIPTION,
    inputSchema: jsonSchema(TOOL_SCHEMA),
    execute: async (input) => shell(input),
  }),
};
const prompt = "Run the command, then tell me what it printed.";

function callsOf(steps) {
  return steps.flatMap((step) => step.toolCalls.map((c) => ({ name: c.toolName, arguments: c.input })));
}

await runMatrix((model) => ({
  async generate() {
    const result = await generateText({ model: provider.responses(model), prompt: "Say hello.", maxRetries: 0 });
    return { text: result.text, finish: result.finishReason };
  },
  async generate_tool() {
    const result = await generateText({
      model: provider.responses(model),
      prompt,
      tools,
      stopWhen: stepCountIs(4),
      maxRetries: 0,
    });
    return { text: result.text, calls: callsOf(result.steps), steps: result.steps.length };
  },
  async stream_tool() {
    const result = streamText({
      model: provider.responses(model),
      prompt,
      tools,
      stopWhen: stepCountIs(4),
      maxRetries: 0,
      onError: ({ error }) => {
        throw error;
      },
    });
    let text = "";
    for await (const delta of result.textStream) text += delta;
    const steps = await result.steps;
    return { text, calls: callsOf(steps), steps: steps.length, finish: await result.finishReason };
  },
}));
