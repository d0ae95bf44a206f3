"""End-to-end jobs that chain training, export and the runtime (the demo, the GPU acceptance run)."""
