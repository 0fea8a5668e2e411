"""Weight-space averaging: model soups (`clipctl soup`) and WiSE-FT (`clipctl wise-ft`)."""
