-- Databases of the shared servers, created on the PostgreSQL container's first start.
CREATE DATABASE mlflow;
CREATE DATABASE mlflow_auth;
CREATE DATABASE prefect;
