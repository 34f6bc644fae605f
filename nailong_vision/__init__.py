"""What the bot and the trainer share about images and the model: decoding, preprocessing,
perceptual hashing and the ONNX classifier. Importable without NoneBot or torch."""
