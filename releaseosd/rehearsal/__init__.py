"""`releaseosd run --sandbox`: the SoundCloud stand-in the product ships for rehearsals."""
