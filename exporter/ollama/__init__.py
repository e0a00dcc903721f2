"""Everything that speaks Ollama's HTTP API: the NDJSON stream parser and the HTTP client."""
