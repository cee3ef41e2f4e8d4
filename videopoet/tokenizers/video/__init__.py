"""video stage of videopoet."""
