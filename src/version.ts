/** The library's version, sent in the `user-agent` header (`cotwebhook/<version>`). Kept equal to package.json by a test. */
export const VERSION = '0.1.0'
