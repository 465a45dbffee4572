-- The table of the storage-host `supabase` plugin (PostgREST).
--
-- Run it once in the Supabase SQL editor (or with psql). It is idempotent.
-- For another table or schema, replace `public.storage` and `schema public`
-- below and set `table_name` / `schema` in the plugin's configuration to
-- match. A schema other than `public` must also be listed under
-- "Exposed schemas" in the project's API settings.

create table if not exists public.storage (
    -- "C" collation: keys compare byte by byte, so `list` returns them in
    -- byte order and a prefix scan can use the primary-key index.
    key        text collate "C" primary key,
    -- Any bytes, the empty value included.
    value      bytea not null,
    -- Set by the plugin on every put; the default covers rows written by hand.
    updated_at timestamptz not null default now()
);

-- Row-level security on and no policy: clients holding the anon key (or a
-- user's JWT) can neither read nor write, while the service_role key, which
-- bypasses RLS, can do both. Configure the plugin with `service_role_key`.
alter table public.storage enable row level security;

-- The grants Supabase gives API roles on tables of an exposed schema (it does
-- so by default in `public`; a schema you create needs them spelled out).
-- Row-level security decides what anon and authenticated may actually do.
grant usage on schema public to anon, authenticated, service_role;
grant select, insert, update, delete on table public.storage to anon, authenticated, service_role;

-- Optional: let the anon key read (but not write) every row.
-- create policy "storage: anon may read" on public.storage
--     for select to anon using (true);
