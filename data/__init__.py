"""The bundled demo data (UCI Adult census, CC BY 4.0; see census/NOTICE), shipped as package data.

Installed, this folder is ``ctrflow.data``: ``ctrflow demo`` finds it through
``importlib.resources``, so it runs from a wheel in any folder.
"""
