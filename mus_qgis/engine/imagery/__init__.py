"""Stage 2: street-level imagery per point (services, local photos, panorama geometry)."""
