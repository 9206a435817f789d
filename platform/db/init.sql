-- Run once by the postgres image on an empty volume: one database per service.
CREATE DATABASE mlflow;
CREATE DATABASE optuna;
