export { createProgram, main } from "./main.js";
export { serve } from "./serve.js";
export type { ServeOptions } from "./serve.js";
