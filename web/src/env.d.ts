// Vite's client types: import.meta.glob, `?raw` / `?worker` imports, CSS imports.
/// <reference types="vite/client" />
