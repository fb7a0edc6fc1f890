"""Training pixgrep-mini's heads: tower features over Flickr8k, the heads and the torch reference towers."""
