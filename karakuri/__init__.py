"""Karakuri: train robot policies in MuJoCo, export one ONNX file, run it at a fixed rate."""

__version__ = "0.1.0"
