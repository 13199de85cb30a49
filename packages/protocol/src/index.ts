export { AppError, ERROR_CODES, FrameTooLargeError, MalformedFrameError, TruncatedFrameError, toAppError } from "./errors.js";
export type { ErrorCode } from "./errors.js";
export { CLAIM_CODE_LENGTH, DEVICE_ID_HEX_LENGTH, PLATFORM_IDS, isDeviceId, normalizeDeviceId } from "./ids.js";
