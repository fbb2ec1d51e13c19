"""`opsbot eval`: replay incident scenarios through the bot and score its RCA."""
