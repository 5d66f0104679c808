"""The product catalog: products from the data, their embeddings, the keyword vocabulary, the Qdrant collection."""
