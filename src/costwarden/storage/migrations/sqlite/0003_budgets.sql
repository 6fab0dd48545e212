CREATE TABLE budgets (
    id          TEXT PRIMARY KEY,
    definition  TEXT NOT NULL,
    updated_at  REAL NOT NULL
);
