"""Full-text search (contract v3, "Search"): an FTS5 index on SQLite, a tsvector column and GIN
indexes on PostgreSQL, nothing on other databases (chat/search_index.py says why and how)."""

from django.db import migrations


def install(apps, schema_editor):
    from chat.search_index import search_index_install

    search_index_install(connection=schema_editor.connection)


def uninstall(apps, schema_editor):
    from chat.search_index import search_index_uninstall

    search_index_uninstall(connection=schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0007_feedback"),
    ]

    operations = [migrations.RunPython(install, uninstall)]
