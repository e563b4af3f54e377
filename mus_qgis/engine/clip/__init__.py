"""Stage 3: label sets, OpenCLIP models, views, embeddings, scores."""
