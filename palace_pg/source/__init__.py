"""The source side: reading a MemPalace palace (ChromaDB + sqlite KG), and generating synthetic ones."""
