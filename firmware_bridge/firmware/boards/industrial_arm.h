/* The Karakuri industrial arm (robot/descriptions/industrial_arm) as this firmware drives
 * it: joint order, joint-name hash and limits exactly as RobotSpec reports them (checked by
 * tests/firmware/test_fw_host.py), plus the simulated servo's gains and inertias. */
#ifndef KK_BOARD_INDUSTRIAL_ARM_H
#define KK_BOARD_INDUSTRIAL_ARM_H

#define KK_ROBOT_N 7
/* SHA-256("shoulder_pan\nshoulder_lift\nelbow\nwrist_1\nwrist_2\nwrist_3\nfinger_left")[0:4] */
#define KK_ROBOT_JOINT_HASH 0x179FA1F6u
#define KK_ROBOT_LOWER {-3.1416f, -3.1416f, -2.8f, -3.1416f, -3.1416f, -3.1416f, 0.0f}
#define KK_ROBOT_UPPER {3.1416f, 0.0f, 2.8f, 3.1416f, 3.1416f, 3.1416f, 0.04f}
#define KK_ROBOT_VELOCITY {3.1416f, 3.1416f, 3.1416f, 3.1416f, 3.1416f, 3.1416f, 0.1f}
#define KK_ROBOT_EFFORT {150.0f, 150.0f, 150.0f, 28.0f, 28.0f, 28.0f, 60.0f}
#define KK_ROBOT_STOP_DECEL {15.0f, 15.0f, 15.0f, 25.0f, 25.0f, 25.0f, 1.0f}
#define KK_ROBOT_HOME {0.0f, -1.5708f, 1.5708f, -1.5708f, -1.5708f, 0.0f, 0.04f}
/* Simulated servo, per joint as the MuJoCo arm's position actuators: the spec's kp (N m/rad,
 * N/m) and kd (N m s/rad, N s/m), the joint damping of the model, and the diagonal of its
 * joint-space inertia at the home pose, armature included (kg m^2; kg for the finger). */
#define KK_ROBOT_KP {2000.0f, 2000.0f, 2000.0f, 500.0f, 500.0f, 500.0f, 1000.0f}
#define KK_ROBOT_KD {200.0f, 200.0f, 200.0f, 50.0f, 50.0f, 50.0f, 40.0f}
#define KK_ROBOT_DAMPING {1.0f, 1.0f, 1.0f, 1.0f, 1.0f, 1.0f, 5.0f}
#define KK_ROBOT_INERTIA {1.2715f, 2.6217f, 1.0477f, 0.0978f, 0.0714f, 0.0509f, 0.06f}

#endif
