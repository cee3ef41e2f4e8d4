"""audio stage of videopoet."""
