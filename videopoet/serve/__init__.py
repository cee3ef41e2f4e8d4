"""`videopoet serve`: an exported model behind an HTTP API and a web page (docs/serve.md).

`keys` (API keys, stored hashed), `limits` (request limits, per-key rate and quota), `store` (jobs in
SQLite), `engine` (batched generation on one `Generator`), `worker` (the queue and the generation thread),
`uploads` (probing uploaded media), `app` (the FastAPI routes), `server` (uvicorn, startup, shutdown),
`tiny` (a small random model folder for tests, the benchmark and trying the server).
"""
