"""Dreams: street images through a diffusion model (diffusers), read again by CLIP."""
