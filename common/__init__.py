"""Small helpers the kit's packages share."""
