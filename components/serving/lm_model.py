"""The language model as MLflow builds it from code when a logged version is loaded or served."""

import mlflow.models

from components.serving.pyfunc import OnnxLanguageModel

mlflow.models.set_model(OnnxLanguageModel())
