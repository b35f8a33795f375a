// Service worker: caches every file of the site on install, then answers from the cache first, so
// the page works offline once it has been loaded. `vedit web build` fills in the file list and a
// version (a hash of the files): a rebuilt site replaces the old cache.
const VERSION = "__VEDIT_VERSION__";
const FILES = __VEDIT_FILES__;
const CACHE = `vedit-web-${VERSION}`;

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((c) => c.addAll(FILES)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((k) => k.startsWith("vedit-web-") && k !== CACHE).map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

self.addEventListener("fetch", (event) => {
  if (event.request.method !== "GET") return;
  event.respondWith(caches.open(CACHE).then((c) =>
    c.match(event.request, { ignoreSearch: true }).then((hit) => hit || fetch(event.request))));
});
