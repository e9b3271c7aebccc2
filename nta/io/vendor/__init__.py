"""Readers of instrument exports (NanoSight, ZetaView)."""
