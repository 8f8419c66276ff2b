-- Second database on the deployment's PostgreSQL server: the Prodigy sandbox's annotation store.
CREATE DATABASE prodigy;
