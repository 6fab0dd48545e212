CREATE TABLE budgets (
    id          TEXT PRIMARY KEY,
    definition  TEXT NOT NULL,
    updated_at  DOUBLE PRECISION NOT NULL
);
