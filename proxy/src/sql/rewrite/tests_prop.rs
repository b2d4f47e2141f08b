//! Property test: generated queries over the seed schema stay confined.
