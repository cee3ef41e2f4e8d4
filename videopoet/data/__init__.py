"""data stage of videopoet."""
