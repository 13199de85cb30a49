import fastifyStatic from "@fastify/static";
import type { FastifyInstance } from "fastify";

/** Where the web console is served. */
export const CONSOLE_PATH = "/console/";

/**
 * Serves the built web console (static files) at `/console/` and redirects `/` there. The console is a
 * client of the public API like any other: it gets no route or privilege of its own. Hashed assets are cached
 * for a year; `index.html` is revalidated so that a new build is picked up at once.
 */
export async function registerConsoleRoutes(app: FastifyInstance, options: { root: string }): Promise<void> {
  await app.register(fastifyStatic, {
    root: options.root,
    prefix: CONSOLE_PATH,
    // The app's own route below serves the index: with the router's `ignoreTrailingSlash` the plugin's
    // directory handling answers 404 for `/console/`.
    index: false,
    cacheControl: false,
    setHeaders: (response, path) => {
      response.setHeader(
        "cache-control",
        /[\\/]assets[\\/]/.test(path) ? "public, max-age=31536000, immutable" : "no-cache",
      );
    },
  });
  app.get(CONSOLE_PATH, (_request, reply) => reply.sendFile("index.html"));
  app.get("/", (_request, reply) => reply.redirect(CONSOLE_PATH));
}
