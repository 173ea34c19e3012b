"""Create ``realtime-ops``, the live dashboard's namespace: signed-in users only.

Its handlers (``realtime.ops.dashboard``) further admit only staff subscribers and
no client publishers.
"""

from django.db import migrations


def create_namespace(apps, schema_editor):
    Namespace = apps.get_model("realtime", "Namespace")
    Namespace.objects.update_or_create(
        name="realtime-ops",
        defaults={
            "description": "Operations: the live dashboard's snapshots (/realtime-ops/dashboard). Staff only.",
            "publish_auth_modes": ["USER"],
            "subscribe_auth_modes": ["USER"],
        },
    )


def remove_namespace(apps, schema_editor):
    apps.get_model("realtime", "Namespace").objects.filter(name="realtime-ops").delete()


class Migration(migrations.Migration):
    dependencies = [("realtime", "0005_namespace_name_anchored")]
    operations = [migrations.RunPython(create_namespace, remove_namespace)]
