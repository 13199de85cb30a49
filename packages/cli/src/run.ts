import { main } from "./main.js";

const code = await main(process.argv);
// A command may have set its own exit code (roost setup does).
process.exitCode = code === 0 ? (process.exitCode ?? 0) : code;
