"""Lean runtime: exported model on camera/video frames with the sentiment overlay. Imports no torch, no wscnet."""
