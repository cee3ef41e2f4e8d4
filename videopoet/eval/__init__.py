"""eval stage of videopoet."""
