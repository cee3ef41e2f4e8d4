"""llm stage of videopoet."""
