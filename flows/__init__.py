"""Pure conversation logic: typed events in, decisions out. No I/O and no clock reads here."""
