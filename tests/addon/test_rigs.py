"""Every rig and every scene, as Blender's own Render Animation renders it: cameras in any rotation mode,
animated camera data, cameras bound to timeline markers, the batch's frames and scene."""
from tests.addon.conftest import free_port, start_real_backend  # noqa: F401  (fixtures come from conftest)

ROTATION_MODES = ("QUATERNION", "AXIS_ANGLE", "XYZ", "XZY", "YXZ", "YZX", "ZXY", "ZYX")


def test_turntable_keys_look_at_the_head_in_every_rotation_mode(run_bpy):
    """glTF and FBX imports bring quaternion, axis-angle and other Euler orders: the turntable keys the
    property the camera's mode reads (it keyed rotation_euler in XYZ, so such a camera circled looking away),
    respects delta rotations, and between keys turns the short way."""
    run_bpy(f"""
        import bpy, math, scene_setup
        from mathutils import Vector
        from blender_addon import portrait
        scene, camera, pivot = scene_setup.portrait_scene()
        for mode in {ROTATION_MODES!r}:
            for delta in ((0.0, 0.0, 0.0), (0.3, -0.2, 0.5)):
                if camera.animation_data is not None:
                    camera.animation_data_clear()
                camera.rotation_mode = mode
                camera.delta_rotation_euler = delta
                camera.location = (1.0, -2.5, 0.6)
                bpy.context.view_layer.update()
                portrait.create_turntable(scene, camera, 8)
                assert portrait.is_free(camera)  # its own turntable: may be re-keyed
                for frame in (1, 1.5, 2, 4.25, 5, 8):
                    scene.frame_set(int(frame), subframe=frame % 1)
                    world = camera.matrix_world
                    forward = -(world.to_3x3().normalized() @ Vector((0.0, 0.0, 1.0)))
                    towards = (pivot.location - world.translation).normalized()
                    assert forward.dot(towards) > (0.999 if frame % 1 == 0 else 0.95), (mode, delta, frame, forward.dot(towards))
                    up = world.to_3x3().normalized() @ Vector((0.0, 1.0, 0.0))
                    assert up.z > 0.9 or frame % 1, (mode, delta, frame)  # upright on every frame
        print("OK")
    """)
